"""What the domain refuses to do, said without HTTP: the web layer (errors.py) maps each type to
a status in one table."""


class Refused(Exception):
    def __init__(self, type: str, message: str):
        super().__init__(message)
        self.type = type
        self.message = message


def not_multimodal(model: str, image: str) -> Refused:
    return Refused("model_not_multimodal", f"{model} reads text only, and {image!r} is an image: choose a model "
                                          "that reads images, or send the question without it")
