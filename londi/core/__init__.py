"""Leaves: modules that import nothing from the rest of LONDI (errors, atomic I/O, the meter,
seeds, argument checks). Every other layer may import them."""
