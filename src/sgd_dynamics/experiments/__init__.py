"""Named studies: plain functions of a configuration, on top of theory, simulators and measurements."""
