"""Files users give and get: decoding text files, reading tables, the rules for texts and labels, and outputs written staged and locked. May import errors and modeling.folder."""
