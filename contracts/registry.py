"""Identity management (paper III.B, VI.A.2): the consortium's members, their roles and
public keys, the devices vendors sold, and which smartphone controls which device.

Members are identified by their 20-byte account address (ID_{k_i}, ID_{v_i}). Each member's
keys are on chain: the Ed25519 account key (the address itself), the BLS public key Y
and the Paillier public key N. Consortium rule (docs/contracts.md):

- the genesis administrators (the `admins` parameter: the consortium's own accounts, never
  a node key; role `admin`) admit vendors V, non-original suppliers NV and smartphones, and
  revoke anyone but an administrator. Each of these is a decision of the administrators
  as a body: it takes effect once `admin_quorum` distinct administrators (default a
  majority) have sent the identical call; the registrar of a member they admit is this
  contract's address. They also arbitrate DSC disputes and vote on bookkeeper changes
  (contracts/governance.py);
- a vendor admits the devices it sold (opaque device ID, type S, warranty end); it may
  also admit the owner's smartphone; it may revoke its own devices;
- every registration after genesis carries the member key's consent (its signature over
  `consent_message`, naming the registrar), so nobody can claim an address whose key it
  does not hold (issue 13, squatting);
- revocation frees the ID: it may be admitted again with a fresh consent (the consent
  nonce moved on, so an old consent cannot be replayed);
- a device's smartphone is bound by the device's vendor or by the device itself;
- a vendor or supplier admits its own maintenance crews Rep (role `crew`): the crew's
  registrar is the node it works for, which is what a device checks before it accepts
  the crew's on-site message (docs/diagnosis.md "Who may send what"); the node may
  revoke its own crews;
- every active member publishes its own inbox endpoint (`set_endpoint`, a transaction it
  signs, replaced by the next one); senders read it by state proof.

Other contracts refuse unregistered senders by reading the views here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import rlp

from chain import Value
from chain.values import encode_values
from contracts import registry_records as rec
from contracts.addresses import REGISTRY
from contracts.common import check_address, ensure_account, get_list, parse_address, require
from contracts.params import integer
from contracts.registry_records import Device, Member
from crypto import Address, KeyPair, address_of, is_valid_signature, keccak256
from vm import CallContext, NativeContract, method, view

ADMIN = "admin"
VENDOR = "vendor"
SUPPLIER = "supplier"
DEVICE = "device"
SMARTPHONE = "smartphone"
CREW = "crew"
ROLES = (ADMIN, VENDOR, SUPPLIER, DEVICE, SMARTPHONE, CREW)
DIAGNOSIS_ROLES = (VENDOR, SUPPLIER)  # may bid in the DSC (IV.B)
ADMIN_ROLES = (VENDOR, SUPPLIER, SMARTPHONE)  # roles the administrators admit

KEY_BYTES_MAX = 1024  # a 4096-bit Paillier N is 512 bytes; BLS G2 keys are 96
DEVICE_TYPE_CHARS_MAX = 64
ENDPOINT_CHARS_MAX = 256  # an http(s) URL of an inbox; longer is not an address anyone needs
ENDPOINT_SCHEMES = ("http://", "https://")
CONSENT_DOMAIN = b"gridchain/registry-consent\x00"
CONSENT_STEPS = 100  # an Ed25519 verification, in loop steps (~10x a storage write)


def _approvals_key(action: bytes) -> bytes:
    return b"a:" + action


def consent_message(chain_id: int, registrar: Address, member: Address, nonce: int) -> bytes:
    """What a member's key signs to let `registrar` admit it: domain, chain id (8-byte BE),
    registrar, member, the member's consent nonce (8-byte BE; it grows at each revocation)."""
    return keccak256(CONSENT_DOMAIN + chain_id.to_bytes(8, "big") + registrar + member + nonce.to_bytes(8, "big"))


def registration_consent(key: KeyPair, chain_id: int, registrar: Address, nonce: int) -> bytes:
    """The member's signature that lets `registrar` register it (client side): a device to
    its vendor, a smartphone or crew to whoever admits it."""
    return key.sign(consent_message(chain_id, registrar, key.address, nonce))


LIMITS = {"devices_per_phone_max": 64}  # defaults; each is at least 1


def limits(params: dict[str, Any]) -> dict[str, int]:
    return {name: integer(params, "registry", name, default, low=1) for name, default in LIMITS.items()}


def admins_of(params: dict[str, Any]) -> frozenset[Address]:
    return frozenset(parse_address(a) for a in params.get("admins", []))


def admin_quorum(params: dict[str, Any]) -> int:
    """Distinct administrators a decision needs: `admin_quorum`, by default a majority."""
    count = len(admins_of(params))
    return integer(params, "registry", "admin_quorum", count // 2 + 1, low=1, below=max(count, 1) + 1)


def validate_params(params: dict[str, Any]) -> None:
    limits(params)
    admin_quorum(params)


class Registry(NativeContract):
    name = "registry"
    address = REGISTRY

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.devices_per_phone_max = limits(params)["devices_per_phone_max"]
        self.admins = admins_of(params)
        self.quorum = admin_quorum(params)

    def genesis(self, ctx: CallContext) -> None:
        """Administrators, and optionally pre-admitted members and devices (config/tests)."""
        for admin in sorted(self.admins):
            self._admit(ctx, admin, ADMIN, b"", b"", REGISTRY)
        for entry in self.params.get("members", []):
            self._admit(ctx, parse_address(entry["address"]), entry["role"],
                        bytes.fromhex(entry.get("bls_key", "")),
                        bytes.fromhex(entry.get("paillier_n", "")), REGISTRY)
        for entry in self.params.get("devices", []):
            device = parse_address(entry["address"])
            vendor = parse_address(entry["vendor"])
            self._admit(ctx, device, DEVICE, bytes.fromhex(entry.get("bls_key", "")),
                        bytes.fromhex(entry.get("paillier_n", "")), vendor)
            ctx.set_value(rec.device_key(device),
                          Device(entry["device_type"], int(entry["warranty_end_s"]), vendor, b"").to_value())
            if "phone" in entry:
                self._bind(ctx, device, parse_address(entry["phone"]))

    # methods ----------------------------------------------------------------------------
    @method
    def register(self, ctx: CallContext, member: bytes, role: str, bls_key: bytes,
                 paillier_n: bytes, member_key: bytes, consent: bytes) -> None:
        """Admit a vendor, supplier or smartphone (the administrators, by quorum: registrar
        this contract; a vendor may admit smartphones for the devices it sells), or a crew
        (by the vendor or supplier it works for, who becomes its registrar). `member` is the
        address of `member_key`, and `consent` that key's signature over
        consent_message(chain id, registrar, member, consent nonce)."""
        require(role in ADMIN_ROLES or role == CREW, "bad-role", f"{role!r} is not registered this way")
        sender_role = self.role(ctx, ctx.sender)
        by_admins = role != CREW and ctx.sender in self.admins
        if role == CREW:
            allowed = sender_role in DIAGNOSIS_ROLES
        else:
            allowed = by_admins or (role == SMARTPHONE and sender_role == VENDOR)
        require(allowed, "not-authorized", f"0x{ctx.sender.hex()} may not admit a {role}")
        registrar = REGISTRY if by_admins else ctx.sender
        self._check_consent(ctx, registrar, member, member_key, consent)
        stored = self._member(ctx, member)
        require(stored is None or not stored.active, "already-registered", f"0x{member.hex()}")
        if by_admins and not self._admins_decide(ctx, "register", [member, role, bls_key, paillier_n]):
            return
        self._admit(ctx, member, role, bls_key, paillier_n, registrar)

    @method
    def register_device(self, ctx: CallContext, device: bytes, device_type: str,
                        warranty_end_s: int, bls_key: bytes, paillier_n: bytes, device_key: bytes,
                        consent: bytes) -> None:
        """A vendor registers a device it sold under an opaque ID (III.B): `device` is the
        address of `device_key`, and `consent` that key's signature over
        consent_message(chain id, vendor, device, consent nonce)."""
        require(self._is_role(ctx, ctx.sender, VENDOR), "not-authorized", "only a vendor registers devices")
        require(0 < len(device_type) <= DEVICE_TYPE_CHARS_MAX, "bad-device-type", device_type)
        require(warranty_end_s >= 0, "bad-warranty", "warranty end is a block time in seconds")
        self._check_consent(ctx, ctx.sender, device, device_key, consent)
        self._admit(ctx, device, DEVICE, bls_key, paillier_n, ctx.sender)
        ctx.set_value(rec.device_key(device), Device(device_type, warranty_end_s, ctx.sender, b"").to_value())
        ctx.emit("DeviceRegistered", device=device, device_type=device_type,
                 warranty_end_s=warranty_end_s, vendor=ctx.sender)

    @method
    def bind_smartphone(self, ctx: CallContext, device: bytes, phone: bytes) -> None:
        """Bind the owner's smartphone to a device (by its vendor or the device itself)."""
        record = self._device(ctx, device)
        require(record is not None, "unknown-device", f"0x{device.hex()}")
        assert record is not None
        require(ctx.sender in (device, record.vendor), "not-authorized",
                "only the device or its vendor binds its smartphone")
        require(self._is_role(ctx, phone, SMARTPHONE), "not-smartphone", f"0x{phone.hex()}")
        self._bind(ctx, device, phone)

    @method
    def revoke(self, ctx: CallContext, member: bytes) -> None:
        """Revoke a member: administrators revoke anyone but an administrator, a vendor its
        own devices, a vendor or supplier its own crews. A revoked ID is no longer a member
        (its messages are refused)."""
        stored = self._member(ctx, member)
        require(stored is not None and stored.active, "not-member", f"0x{member.hex()}")
        assert stored is not None
        by_admin = ctx.sender in self.admins and member not in self.admins
        by_registrar = stored.role in (DEVICE, CREW) and stored.registrar == ctx.sender
        require(by_admin or by_registrar, "not-authorized", f"0x{ctx.sender.hex()} may not revoke")
        if not by_registrar and not self._admins_decide(ctx, "revoke", [member]):
            return
        ctx.set_value(rec.member_key(member), replace(stored, active=False).to_value())
        ctx.set_value(rec.nonce_key(member), self.consent_nonce(ctx, member) + 1)  # old consents die
        record = self._device(ctx, member)
        if record is not None and record.phone:
            phone = record.phone
            ctx.set_value(rec.phone_key(phone), [d for d in get_list(ctx, rec.phone_key(phone)) if d != member])
            ctx.set_value(rec.device_key(member), replace(record, phone=b"").to_value())
        ctx.emit("MemberRevoked", member=member, by=ctx.sender)

    @method
    def update_keys(self, ctx: CallContext, bls_key: bytes, paillier_n: bytes) -> None:
        """A member replaces its own BLS key Y and Paillier key N."""
        stored = self._member(ctx, ctx.sender)
        require(stored is not None and stored.active, "not-member", f"0x{ctx.sender.hex()}")
        assert stored is not None
        self._check_keys(bls_key, paillier_n)
        ctx.set_value(rec.member_key(ctx.sender), replace(stored, bls_key=bls_key, paillier_n=paillier_n).to_value())
        ctx.emit("KeysUpdated", member=ctx.sender)

    @method
    def set_endpoint(self, ctx: CallContext, url: str) -> None:
        """A member publishes (or replaces) the URL of its own inbox, where sealed
        messages for it are posted. Signed by the member's account key like every
        transaction; the latest one counts."""
        stored = self._member(ctx, ctx.sender)
        require(stored is not None and stored.active, "not-member", f"0x{ctx.sender.hex()}")
        require(0 < len(url) <= ENDPOINT_CHARS_MAX and url.startswith(ENDPOINT_SCHEMES), "bad-endpoint",
                f"an http(s) URL of at most {ENDPOINT_CHARS_MAX} characters")
        ctx.set_value(rec.endpoint_key(ctx.sender), url)
        ctx.emit("EndpointSet", member=ctx.sender, url=url)

    # views ------------------------------------------------------------------------------
    @view
    def is_member(self, ctx: CallContext, member: bytes) -> bool:
        stored = self._member(ctx, member)
        return stored is not None and stored.active

    @view
    def role(self, ctx: CallContext, member: bytes) -> str:
        """The active member's role, or "" for an unknown or revoked ID."""
        stored = self._member(ctx, member)
        return stored.role if stored is not None and stored.active else ""

    @view
    def member(self, ctx: CallContext, member: bytes) -> Value:
        """The Member record (registry_records.py) or [] when unknown."""
        stored = self._member(ctx, member)
        return stored.to_value() if stored is not None else []

    @view
    def device(self, ctx: CallContext, device: bytes) -> Value:
        """The Device record (registry_records.py) or [] when unknown."""
        record = self._device(ctx, device)
        return record.to_value() if record is not None else []

    @view
    def in_warranty(self, ctx: CallContext, device: bytes) -> bool:
        """Warranty status at the current block time (V.A): time_s <= warranty end."""
        record = self._device(ctx, device)
        require(record is not None, "unknown-device", f"0x{device.hex()}")
        assert record is not None
        return ctx.block.time_s <= record.warranty_end_s

    @view
    def acts_for(self, ctx: CallContext, device: bytes, actor: bytes) -> bool:
        """True when `actor` is the active device itself or its bound active smartphone."""
        record = self._device(ctx, device)
        if record is None or not self.is_member(ctx, device):
            return False
        return actor in (device, record.phone) and self.is_member(ctx, actor)

    @view
    def endpoint(self, ctx: CallContext, member: bytes) -> str:
        """The member's published inbox URL, or "" when it published none."""
        url = ctx.get_value(rec.endpoint_key(member))
        assert url is None or isinstance(url, str)
        return url or ""

    @view
    def is_admin(self, ctx: CallContext, member: bytes) -> bool:
        """One of the genesis administrators (their set is fixed at genesis)."""
        return member in self.admins

    @view
    def admin_quorum(self, ctx: CallContext) -> int:
        """How many distinct administrators a decision of theirs needs."""
        return self.quorum

    @view
    def approvals(self, ctx: CallContext, action: bytes) -> Value:
        """The administrators who approved the decision `action` (keccak256 of rlp [method
        name, its encoded arguments]) that has not reached its quorum yet."""
        return get_list(ctx, _approvals_key(action))

    @view
    def consent_nonce(self, ctx: CallContext, member: bytes) -> int:
        """The nonce a member's next registration consent must sign (revocations so far)."""
        return ctx.get_int(rec.nonce_key(member))

    @view
    def devices_of(self, ctx: CallContext, phone: bytes) -> Value:
        return get_list(ctx, rec.phone_key(phone))

    # ------------------------------------------------------------------------------------
    def _admit(self, ctx: CallContext, member: Address, role: str, bls_key: bytes,
               paillier_n: bytes, registrar: Address) -> None:
        check_address(member, "member")
        require(role in ROLES, "bad-role", repr(role))
        self._check_keys(bls_key, paillier_n)
        stored = self._member(ctx, member)
        # a revoked ID is free again (its registrar and role may change)
        require(stored is None or not stored.active, "already-registered", f"0x{member.hex()}")
        ctx.set_value(rec.member_key(member), Member(role, bls_key, paillier_n, registrar, True).to_value())
        ensure_account(ctx, member)
        ctx.emit("MemberRegistered", member=member, role=role, registrar=registrar)

    def _check_consent(self, ctx: CallContext, registrar: Address, member: bytes, member_key: bytes,
                       consent: bytes) -> None:
        """Only the key's holder lets an address be claimed (issue 13, squatting)."""
        require(address_of(member_key) == member, "bad-consent", "the member is not the address of its key")
        ctx.steps(CONSENT_STEPS)
        message = consent_message(ctx.block.chain_id, registrar, member, self.consent_nonce(ctx, member))
        require(is_valid_signature(member_key, consent, message), "bad-consent",
                "the member's key did not sign this registration")

    def _admins_decide(self, ctx: CallContext, method_name: str, args: list[Value]) -> bool:
        """Count the sender's approval of this exact call; True once `admin_quorum` distinct
        administrators approved it (the approvals are then forgotten)."""
        action = keccak256(rlp.encode([method_name.encode(), encode_values(args)]))
        approvals = get_list(ctx, _approvals_key(action))
        require(ctx.sender not in approvals, "already-approved", f"0x{ctx.sender.hex()} approved this already")
        approvals = [*approvals, ctx.sender]
        ctx.emit("AdminApproval", action=action, by=ctx.sender, approvals=len(approvals), quorum=self.quorum)
        if len(approvals) < self.quorum:
            ctx.set_value(_approvals_key(action), approvals)
            return False
        ctx.delete(_approvals_key(action))
        return True

    def _bind(self, ctx: CallContext, device: Address, phone: Address) -> None:
        record = self._device(ctx, device)
        assert record is not None
        previous = record.phone
        if previous:
            old = [d for d in get_list(ctx, rec.phone_key(previous)) if d != device]
            ctx.set_value(rec.phone_key(previous), old)
        devices = get_list(ctx, rec.phone_key(phone))
        require(len(devices) < self.devices_per_phone_max, "too-many-devices",
                f"a smartphone controls at most {self.devices_per_phone_max} devices")
        ctx.set_value(rec.phone_key(phone), [*devices, device])
        ctx.set_value(rec.device_key(device), replace(record, phone=phone).to_value())
        ctx.emit("SmartphoneBound", device=device, phone=phone)

    def _check_keys(self, bls_key: bytes, paillier_n: bytes) -> None:
        require(len(bls_key) <= KEY_BYTES_MAX and len(paillier_n) <= KEY_BYTES_MAX, "bad-key",
                f"public keys are at most {KEY_BYTES_MAX} bytes")

    def _is_role(self, ctx: CallContext, member: Address, role: str) -> bool:
        return self.role(ctx, member) == role

    def _member(self, ctx: CallContext, member: bytes) -> Member | None:
        stored = ctx.get_value(rec.member_key(member))
        return Member.from_value(stored) if stored is not None else None

    def _device(self, ctx: CallContext, device: bytes) -> Device | None:
        stored = ctx.get_value(rec.device_key(device))
        return Device.from_value(stored) if stored is not None else None
