"""Pictures on disk: scanning class folders (each picture checked once while unchanged), safe uploads and
zips, data references, the decoded-image store."""
