"""The DVC stages of the study, one module each (dvc.yaml runs ``python -m stages.<name>``)."""
