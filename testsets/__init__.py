"""Deterministic test inputs: pictures (`images`), OCR pictures with their
ground truth (`ocr`, `documents`, `multilingual`; lines and boxes:
`ground_truth`), OCR accuracy against it (`accuracy`), varied sentences
(`sentences`)."""
