"""Networks: the backbone registry, offline weights, preprocessing, freezing by named stages, augmentation."""
