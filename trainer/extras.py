"""Optional extras (ONNX, TensorBoard, Optuna): imported only when a feature uses them.

A plain install never needs them. A feature that does calls ``require``, which imports the
module or raises ``MissingExtraError``: one line naming the package and the install command
(``make install-extras``, pins in ``requirements-extras.txt``).
"""

import importlib
from types import ModuleType

from trainer.errors import MissingExtraError

INSTALL = 'make install-extras (pins: requirements-extras.txt)'


def require(module: str, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module`` for ``feature``, or raise MissingExtraError naming how to install it.

    ``package`` is the name pip knows it by, when that differs from the module's.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing = error.name or module
        raise MissingExtraError(
            f'{feature} needs the {package or module} package ({missing} cannot be imported: '
            f'{error}); install the extras: {INSTALL}'
        ) from None
