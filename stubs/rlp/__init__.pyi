# Types for the parts of pyrlp (4.x, untyped) that gridchain uses: encode gives bytes,
# decode into a record class gives that class, and a record's fields are read by name.
from typing import Any, TypeVar, overload

from rlp import codec as codec
from rlp import exceptions as exceptions
from rlp import sedes as sedes
from rlp.exceptions import DecodingError as DecodingError
from rlp.exceptions import DeserializationError as DeserializationError
from rlp.exceptions import EncodingError as EncodingError
from rlp.exceptions import RLPException as RLPException
from rlp.exceptions import SerializationError as SerializationError
from rlp.sedes.serializable import Serializable as Serializable

_T = TypeVar("_T", bound=Serializable)

def encode(obj: object, sedes: object = ..., infer_serializer: bool = ..., cache: bool = ...) -> bytes: ...
@overload
def decode(rlp: bytes, sedes: type[_T], strict: bool = ..., recursive_cache: bool = ..., **kwargs: Any) -> _T: ...
@overload
def decode(rlp: bytes, sedes: object = ..., strict: bool = ..., recursive_cache: bool = ..., **kwargs: Any) -> Any: ...
