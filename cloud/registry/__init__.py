"""The model registry's signed side: TUF keys and repository (more of the registry to come)."""
