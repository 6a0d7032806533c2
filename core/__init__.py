"""The foundation every layer may import: errors (each with its HTTP status), settings, per-request timings.

Nothing here imports another package of the project, so no layer above can form a circle through it.
"""
