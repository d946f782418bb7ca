"""The torch-free layer between the command line and the stages: the config folder and its groups,
the stage registry, the command line's arguments, and the checks made before anything runs."""
