"""The protocol-agnostic routing core: exchanges, queues, consumers, dead-lettering, users.

Synchronous and clock-injected (ring 0 of DESIGN.md). Adapters sit on ``Broker`` /
``VirtualHost`` and implement ``Consumer``; a store implements ``BrokerObserver``.
"""

from gateway.core.arguments import QueueSettings
from gateway.core.broker import Broker
from gateway.core.consumers import Consumer, CreditGroup, Delivery, Subscription
from gateway.core.errors import (
    AccessRefused,
    AuthenticationFailed,
    CommandInvalid,
    CoreError,
    InvalidPath,
    NotAllowed,
    NotFound,
    NotImplementedFeature,
    PreconditionFailed,
    ResourceError,
    ResourceLocked,
)
from gateway.core.exchanges import (
    Binding,
    DefaultExchange,
    DirectExchange,
    Exchange,
    FanoutExchange,
    HeadersExchange,
)
from gateway.core.message import Message, Properties, QueueEntry, parse_expiration
from gateway.core.observers import BrokerObserver
from gateway.core.queues import Queue
from gateway.core.topic_trie import TopicExchange, TopicTrie
from gateway.core.users import User, UserDatabase, hash_password, verify_password
from gateway.core.vhost import DeclareOk, RouteResult, VirtualHost

__all__ = [
    "AccessRefused",
    "AuthenticationFailed",
    "Binding",
    "Broker",
    "BrokerObserver",
    "CommandInvalid",
    "Consumer",
    "CoreError",
    "CreditGroup",
    "DeclareOk",
    "DefaultExchange",
    "Delivery",
    "DirectExchange",
    "Exchange",
    "FanoutExchange",
    "HeadersExchange",
    "InvalidPath",
    "Message",
    "NotAllowed",
    "NotFound",
    "NotImplementedFeature",
    "PreconditionFailed",
    "Properties",
    "Queue",
    "QueueEntry",
    "QueueSettings",
    "ResourceError",
    "ResourceLocked",
    "RouteResult",
    "Subscription",
    "TopicExchange",
    "TopicTrie",
    "User",
    "UserDatabase",
    "VirtualHost",
    "hash_password",
    "parse_expiration",
    "verify_password",
]
