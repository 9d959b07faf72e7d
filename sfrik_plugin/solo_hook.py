"""The import hook that registers the plugin's methods in solo-learn's METHODS right after
``solo.methods`` is imported, in any Python process: solo's argparse scripts main_knn.py and
main_umap.py (no Hydra plugin runs there) then find "sfrik", "auh" and "simclr_shared" in an
unmodified checkout, without a wrapper.

Installed as ``sfrik_plugin_solo_hook.pth`` in site-packages (regular and editable installs;
setup.py writes it from this file), whose one line executes this source at interpreter start-up.
What runs at start-up: this module's code, which imports nothing beyond sys and os (both loaded
already) and puts one finder at the front of sys.meta_path. The finder answers only for
"solo.methods": it asks the other finders for that module's spec, then chains the registration
onto the spec's own loader (the loader keeps its class). Nothing imports torch, solo-learn or this
package until a program imports solo.methods itself.

Off switch: SFRIK_PLUGIN_SOLO_HOOK=0 (or false/no/off) in the environment, read at start-up and
again when solo.methods is imported. A failure to register warns (RuntimeWarning) and never breaks
the import of solo.methods.

This file is also an ordinary module (tests import it); the .pth carries a copy of its source, so
reinstall the package after editing it.
"""

import os
import sys

ENV_VAR = "SFRIK_PLUGIN_SOLO_HOOK"
TARGET = "solo.methods"


def _enabled() -> bool:
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def _register(module) -> None:
    """Adds the plugin's methods to module.METHODS; never raises."""
    if not _enabled():
        return
    try:
        from sfrik_plugin.solo.registration import register_methods_from_hook

        register_methods_from_hook(module.METHODS)
    except Exception as err:  # noqa: BLE001 (a broken plugin must not break solo-learn)
        import warnings

        warnings.warn(
            f"sfrik-plugin: the import hook could not register its methods in solo.methods.METHODS "
            f"({err!r}); set {ENV_VAR}=0 to turn the hook off",
            RuntimeWarning,
            stacklevel=2,
        )


class SoloMethodsFinder:
    """A meta-path finder for "solo.methods" only (see the module docstring)."""

    sfrik_plugin_hook = True  # tells the installed instance apart (tests; no double install)

    def __init__(self) -> None:
        self._busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != TARGET or self._busy or not _enabled():
            return None
        self._busy = True
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        finally:
            self._busy = False
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec  # not found, or a loader we cannot chain onto: the import goes on untouched
        exec_module = loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            _register(module)

        # on this module's loader instance only (a SourceFileLoader is made per module)
        loader.exec_module = exec_then_register
        return spec

    def invalidate_caches(self) -> None:
        pass


def install() -> None:
    """Puts the finder first on sys.meta_path, once, unless the hook is switched off. Where
    solo.methods is imported already (the hook installed late), registers at once."""
    if not _enabled() or any(getattr(f, "sfrik_plugin_hook", False) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, SoloMethodsFinder())
    if TARGET in sys.modules:
        _register(sys.modules[TARGET])


if __name__ == "_sfrik_plugin_solo_hook":  # executed from the .pth at start-up
    install()
