"""Small GPT implementations in the layouts people run, written for symgrad's tests."""
