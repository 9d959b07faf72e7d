"""Helpers of the library's commands that are not part of the method: where results go (files),
a run cut short (interrupt), and solo-learn's checkout (solo_learn)."""
