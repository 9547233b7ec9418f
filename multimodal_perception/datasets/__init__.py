"""Readers for the real recordings in ``../shared/data`` (KITTI, View-of-Delft, RADIATE).

Read in place, never copied into the project; see each folder's PROVENANCE.txt.
"""
