"""`mnist audit`: which labels look wrong. images.py reads the labeled images with what names each;
issues.py ranks the suspects by confident learning (cleanlab). The training images' out-of-sample
probabilities come from K-fold cross-validation, which trains models: stages/cross_validation.py."""
