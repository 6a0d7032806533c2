"""Test helpers: real servers started for the tests, stand-ins for AWS, scripted models, HTTP load."""
