"""The dense-nas test suite; it mirrors the package."""
