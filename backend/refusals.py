"""What the domain refuses to do, said without HTTP: the web layer (errors.py) maps each type to
a status in one table."""


class Refused(Exception):
    def __init__(self, type: str, message: str):
        super().__init__(message)
        self.type = type
        self.message = message
