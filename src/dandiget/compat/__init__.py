"""Adapters that keep code written against dandi-cli's ``dandi.download`` working.

The engine never imports from here; these classes translate its events and options into
dandi-cli's shapes (progress records, ``<name>.dandidownload/``, ``Downloader``, humanize text).
"""
