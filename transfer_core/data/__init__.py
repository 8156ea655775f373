"""Pictures on disk: scanning class folders, safe uploads and zips, data references, the decoded-image store."""
