"""Aachen Day-Night localization: settings, the triangulated reference, query localization and the submission."""
