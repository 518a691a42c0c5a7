"""The help formatter of every command line: examples kept line by line, defaults said once.

argparse's ``ArgumentDefaultsHelpFormatter`` appends "(default: X)" to every flag, also to
one whose help already says its default ("(default: the run's, else 122) (default:
None)"), and its description reflows a module docstring's example lines into one
paragraph. This one reflows a description's paragraphs (separated by blank lines) but
keeps an indented paragraph as written, line by line (examples, as in reST), and adds
the default only where the help does not mention one and there is one to say (not None,
False or a required flag's).
"""

import argparse
import re
import textwrap


class HelpFormatter(argparse.HelpFormatter):
    """Indented description paragraphs kept as written, each default said once."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = re.split(r'\n\s*\n', textwrap.dedent(text).strip('\n'))
        return '\n\n'.join(
            '\n'.join(indent + line.rstrip() for line in paragraph.splitlines())
            if all(line[:1].isspace() for line in paragraph.splitlines())
            else textwrap.fill(
                ' '.join(paragraph.split()), width, initial_indent=indent, subsequent_indent=indent
            )
            for paragraph in paragraphs
        )

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ''
        default = action.default
        if (
            'default' in text
            or '%(default)' in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or action.required
            or (not action.option_strings and action.nargs not in ('?', '*'))
        ):
            return text
        return f'{text} (default: %(default)s)'
