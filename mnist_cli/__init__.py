"""mnist-cli: pretrain, finetune and evaluate image classifiers on MNIST-style data."""

__version__ = "0.1.0"
