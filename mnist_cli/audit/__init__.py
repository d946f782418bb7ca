"""`mnist audit`: which labels look wrong. images.py reads the labeled images with what names each;
folds.py gives the training images out-of-sample probabilities by K-fold cross-validation;
issues.py ranks the suspects by confident learning (cleanlab)."""
