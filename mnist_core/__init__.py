"""What the training package and the service share: the network and the input contract.

This package imports only torch and numpy (and the standard library) so that the service can use
it without torchvision or any other training dependency.
"""
