"""Checking a data set before training: duplicates, train/validation leaks, suspected wrong labels.

    checks          check_dataset(source) -> QualityReport: the whole check, in one call
    findings        what it finds: QualityReport (with its summary in words), DuplicatePair, SuspectLabel
    embeddings      each picture's backbone features and thumbnail, cached by file contents
    duplicates      exact and near duplicates, and which of them leak across training and validation
    suspect_labels  out-of-fold label probabilities and the ranked list of likely mistakes
    learning_curve  would more pictures help, and of which class? the first model refitted on fewer of each
    review_actions  move a picture to another class, exclude it, undo either (files are moved, never deleted)
"""
