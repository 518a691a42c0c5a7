"""One base class for every error a user can cause, so each entry point catches one type.

The message of each is one line that names the thing (a file, a flag, a setting) and what
is wrong with it; the command-line entry points print ``error: <message>`` and exit 1.
Every subclass the trainer raises is defined here (the modules that raise them re-export
theirs under the old import paths).
"""


class UserError(Exception):
    """Something the user can fix: bad data, a wrong file, an unusable device or setting."""


class DataError(UserError, ValueError):
    """The data set could not be read; the message names the path and what is wrong."""


class DeviceError(UserError, RuntimeError):
    """The requested device cannot be used; the message says what to do instead."""


class ModelFileError(UserError, ValueError):
    """A weights file that cannot be loaded into the model; the message names file and cause."""


class ImageError(UserError, ValueError):
    """An input that is not a usable image; the message says why."""


class ImageTooLargeError(ImageError):
    """An image whose decoded size is over the limit; refused before decoding."""


class ExportError(UserError, RuntimeError):
    """The model cannot be exported, or the export does not reproduce Chainer's answers."""


class RunFolderError(UserError):
    """The run folder cannot be used as asked (settings changed, in use, not writable...)."""


class NonFiniteLossError(UserError, RuntimeError):
    """The training loss became NaN or infinite."""


class ServeError(UserError, OSError):
    """The server cannot start; the message says where and why."""


class OptionError(UserError, ValueError):
    """An option value that cannot be used; the message names the flag."""


class ArchitectureError(UserError, ValueError):
    """An ``--arch`` that names no architecture, or options its factory does not take."""


class StoppingError(UserError, ValueError):
    """An early-stopping setting that cannot be used; the message names it."""


class MissingExtraError(UserError, ImportError):
    """An optional package a feature needs is not installed (or not a usable version)."""
