"""One module per schema revision; never edited once landed."""
