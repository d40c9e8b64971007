"""The local rehearsal behind ``--dry-run``: a compiled workflow executed on this machine as
Argo would, against a fake TAO. Host-side only; nothing here enters the image. See
README.md beside this file for what it emulates and what it does not.
"""
