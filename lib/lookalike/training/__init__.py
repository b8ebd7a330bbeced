"""Learning descriptors: the training set from open collections, synthetic copies, distributed training."""
