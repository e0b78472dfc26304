"""Use cases behind the DVC stages: the training job (train, finetune) and publishing results."""
