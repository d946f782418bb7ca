"""The semi-supervised methods: `semi_supervised=<name>` (other than none) wraps the supervised task
in a method that also learns from the unlabeled rest of the training images; conf/semi_supervised/
<name>.yaml names its class here with `_target_`, its other keys are the class's arguments, and the
run gives the task, the batch preparation and the pool (fixmatch.FixMatch)."""
