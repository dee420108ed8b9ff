from rlp.sedes.big_endian_int import BigEndianInt as BigEndianInt
from rlp.sedes.big_endian_int import big_endian_int as big_endian_int
from rlp.sedes.binary import Binary as Binary
from rlp.sedes.binary import binary as binary
from rlp.sedes.lists import CountableList as CountableList
from rlp.sedes.lists import List as List
from rlp.sedes.raw import raw as raw
from rlp.sedes.serializable import Serializable as Serializable
