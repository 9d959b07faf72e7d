"""Adds the plugin's methods to solo-learn's method table (solo.methods.METHODS).

Importing this module needs neither solo-learn nor torch; register_methods() imports them.
"""

import warnings

# name in cfg.method -> (module of sfrik_plugin.solo, class name)
PLUGIN_METHODS = {
    "sfrik": ("sfrik_plugin.solo.sfrik", "SFRIK"),
    "auh": ("sfrik_plugin.solo.auh", "AUH"),
    # SimCLR with the shared projector (solo's own "simclr" stays as it is)
    "simclr_shared": ("sfrik_plugin.solo.simclr", "SimCLRShared"),
}


def register_methods(methods=None) -> dict:
    """Adds the plugin's methods (PLUGIN_METHODS: "sfrik", "auh", "simclr_shared") to ``methods``
    (default: solo.methods.METHODS) and returns it; registers the configs' resolvers too.

    Idempotent. A name already bound to another class (e.g. a future built-in) is left as it is,
    with a warning, so that the plugin never replaces a solo-learn method.
    """
    from hydra_plugins.sfrik_plugin.resolvers import register_resolvers

    register_resolvers()  # the packaged configs' ${sfrik_plugin.cosine_end:...} and ${sfrik_plugin.num_nodes:...}
    if methods is None:
        from solo.methods import METHODS

        methods = METHODS
    return _register(methods, PLUGIN_METHODS)


def _register(methods, plugin_methods) -> dict:
    import importlib

    for name, (module_name, class_name) in plugin_methods.items():
        cls = getattr(importlib.import_module(module_name), class_name)
        current = methods.get(name)
        if current is None:
            methods[name] = cls
        elif current is not cls:
            warnings.warn(
                f"sfrik-plugin: solo.methods.METHODS[{name!r}] is already {current.__module__}."
                f"{current.__qualname__}; the plugin's {module_name}.{class_name} was not registered",
                RuntimeWarning,
                stacklevel=2,
            )
    return methods


def register_methods_from_hook(methods) -> dict:
    """register_methods(methods) for the import hook (sfrik_plugin/solo_hook.py), which runs
    right after solo.methods is imported, wherever that import comes from. When it comes from one
    of the plugin's own modules (``import sfrik_plugin.solo.sfrik`` or ``.projected`` first
    imports solo.methods on the way), that module is not finished yet: what needs it is left out
    here, and the module's last line (register_pending) registers it once it is complete."""
    import sys

    from hydra_plugins.sfrik_plugin.resolvers import register_resolvers

    register_resolvers()
    base = sys.modules.get("sfrik_plugin.solo.projected")
    if base is not None and not hasattr(base, "ProjectedMethod"):
        return methods  # the methods' base class is half-imported: its last line registers them
    ready = {}
    for name, (module_name, class_name) in PLUGIN_METHODS.items():
        module = sys.modules.get(module_name)
        if module is not None and not hasattr(module, class_name):
            continue  # being imported right now (see above)
        ready[name] = (module_name, class_name)
    return _register(methods, ready)


def register_pending() -> None:
    """The last line of the plugin's solo modules (projected and each method's): when the import
    hook ran while the module was half-imported (it imports solo.methods on its way), the hook
    left out what needed it; the module is complete now, so the hook's registration runs again.
    Does nothing before solo.methods is imported (the hook will run then) or with the hook off
    (SFRIK_PLUGIN_SOLO_HOOK=0: registering is the user's register_methods() call)."""
    import sys

    solo_methods = sys.modules.get("solo.methods")
    if solo_methods is None or not hasattr(solo_methods, "METHODS"):
        return
    if not any(getattr(finder, "sfrik_plugin_hook", False) for finder in sys.meta_path):
        return
    register_methods_from_hook(solo_methods.METHODS)
