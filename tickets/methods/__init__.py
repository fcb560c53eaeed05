"""Built-in pruning methods; importing this package registers them in `tickets.registry.METHODS`."""

from tickets.methods import controls, imp, one_shot, random_pruning  # noqa: F401
