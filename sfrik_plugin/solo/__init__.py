"""solo-learn integration: the SFRIK and AUH methods and their registration in
solo.methods.METHODS.

    from sfrik_plugin.solo import register_methods
    register_methods()          # METHODS["sfrik"], METHODS["auh"], METHODS["simclr_shared"]

Importing this package does not import solo-learn; SFRIK, AUH and SimCLRShared are loaded on first access,
which needs solo-learn. Inside solo-learn's Hydra scripts the Hydra plugin
(hydra_plugins.sfrik_plugin) registers them.
"""

from .registration import PLUGIN_METHODS, register_methods

__all__ = ["SFRIK", "AUH", "SimCLRShared", "register_methods", "PLUGIN_METHODS"]


def __getattr__(name):
    # lazy, so that the registration (and the Hydra plugin) can import this package without solo
    if name == "SFRIK":
        from .sfrik import SFRIK

        return SFRIK
    if name == "AUH":
        from .auh import AUH

        return AUH
    if name == "SimCLRShared":
        from .simclr import SimCLRShared

        return SimCLRShared
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
