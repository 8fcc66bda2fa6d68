"""The ``provisioning`` command: run the services and talk to them."""
