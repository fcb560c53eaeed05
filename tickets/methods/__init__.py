"""Built-in pruning methods; importing this package registers them in `tickets.registry.METHODS`."""

from tickets.methods import (  # noqa: F401 - each module registers its method
    controls,
    early_bird,
    fisher_mask,
    gmp,
    grasp,
    imp,
    layerwise_magnitude,
    lr_rewind,
    movement,
    one_shot,
    owl,
    random_pruning,
    ria,
    snip,
    soft_movement,
    sparsegpt,
    structured_imp,
    structured_magnitude,
    synflow,
    wanda,
)
