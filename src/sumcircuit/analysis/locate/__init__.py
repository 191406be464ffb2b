"""Locating: the locator registry, the built-in locators, the selection rules and the circuit."""
