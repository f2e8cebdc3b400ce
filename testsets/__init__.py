"""Deterministic test inputs: pictures (`images`), OCR pictures with their
ground truth (`ocr`), varied sentences (`sentences`)."""
