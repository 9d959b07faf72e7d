"""Hydra plugin of sfrik-plugin (discovered by Hydra in the hydra_plugins namespace package)."""
