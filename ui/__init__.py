"""The web page (make ui, make demo): one Gradio tab per pipeline, built on
the client library in clients/. Nothing imports this package (floor 6 of
tests/test_layout.py). docs/ui.md says how it is run and tested."""
