"""Thin adapters that make SFRIK a method of other SSL libraries (hosts).

- sfrik_plugin.hosts.lightly: SFRIK and AUH losses in lightly's conventions, LeJEPA's loss with
  SphereMMD in SIGReg's place; sfrik_plugin.hosts.lightly_benchmark: the method module for
  lightly's ResNet-50 ImageNet benchmark harness.
- sfrik_plugin.hosts.stable_pretraining: SFRIK and AUH as stable-pretraining methods.

Each adapter checks its host's installed versions first (hosts.requirements). The maths stays in
the library (sfrik_plugin.losses, sfrik_plugin.sphere_mmd); solo-learn's integration is
sfrik_plugin.solo.
"""
