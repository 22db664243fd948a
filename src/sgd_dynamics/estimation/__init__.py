"""NumPy-only estimators shared by ``simulate/`` and ``measure/``: fits, spectra, stationarity tests.

This layer sits above ``theory/`` and below both consumers, so that neither carries its own copy of an
estimator (ARCHITECTURE.md, "Every study has one shape"). It never imports torch.
"""
