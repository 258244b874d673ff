"""The Open Inference Protocol over gRPC: its service definition, the modules generated from it, and
the door (service.py)."""
