"""Spec -> trials -> Ray Tune: planning, the trial worker, progress, and the Ray session."""
