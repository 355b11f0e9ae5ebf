"""The machine agent: claims this machine's runs and runs each flow as a local program."""
