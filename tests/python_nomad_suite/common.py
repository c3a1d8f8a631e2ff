# Settings for python-nomad's own test suite (its sdist ships the tests without this
# module); read from the environment the way its upstream CI sets them.
import os

IP = os.environ.get("NOMAD_IP", "127.0.0.1")
NOMAD_PORT = os.environ.get("NOMAD_PORT", 4646)
NOMAD_TOKEN = os.environ.get("NOMAD_TOKEN", None)
NOMAD_NAMESPACE = os.environ.get("NOMAD_NAMESPACE", "admin")
