// The broker metadata the managers keep in their replicated KV store, shared
// by the managers (who write it) and the brokers (who read it to know which
// partition replicas to host). All JSON under /dvote/.
//
//   /dvote/brokers/<id>               BrokerRecord     (service discovery: brokers register at start)
//   /dvote/topics/<name>              TopicRecord      (partitions and their replicas)
//   /dvote/producers/<id>             ProducerRecord
//   /dvote/consumers/<id>             ConsumerRecord
//   /dvote/groups/<topic>/<group>     GroupRecord      (consumer group members and generation)
//   /dvote/config/broker-replace-after-ms   how long a broker may be dead before its replicas move (ms, text)

export const BROKER_KEYS = {
  broker: (id: string) => `/dvote/brokers/${id}`,
  brokersPrefix: '/dvote/brokers/',
  topic: (name: string) => `/dvote/topics/${name}`,
  topicsPrefix: '/dvote/topics/',
  producer: (id: string) => `/dvote/producers/${id}`,
  consumer: (id: string) => `/dvote/consumers/${id}`,
  group: (topic: string, group: string) => `/dvote/groups/${topic}/${group}`,
  replaceAfter: '/dvote/config/broker-replace-after-ms',
} as const;

export interface BrokerRecord {
  id: string;
  /** HTTP "host:port" the clients use. */
  http: string;
  /** Raft transport "host:port" the other brokers use. */
  raft: string;
  registeredAt: string;
}

export interface PartitionRecord {
  partition: number;
  /** Desired replica set; replicas[0] is the preferred leader. */
  replicas: string[];
  /** The voters the group was created with (identical on every bootstrapping replica, never changes). */
  bootstrapVoters: string[];
  /** Brokers that may still create the group from bootstrapVoters (initial replicas not replaced since). */
  bootstrap: string[];
}

export interface TopicRecord {
  name: string;
  replicationFactor: number;
  partitions: PartitionRecord[];
  createdAt: string;
  /** Whole-topic consumers registered so far (the next consumer's round-robin index). */
  consumers: number;
}

export interface ProducerRecord {
  id: string;
  topic: string;
  partition: number | null;
  createdAt: string;
}

export interface ConsumerRecord {
  id: string;
  topic: string;
  /** null: the whole topic. */
  partition: number | null;
  /** Partitions it reads. */
  partitions: number[];
  /** Round-robin index i of the original design's (i + j) mod n. */
  index: number;
  createdAt: string;
}

export interface GroupRecord {
  topic: string;
  group: string;
  members: string[];
  generation: number;
}

/** Placement as the brokers poll it (GET /v1/placement on any manager). */
export interface PlacementDoc {
  revision: number;
  brokers: BrokerRecord[];
  topics: TopicRecord[];
}

/** What a broker reports about each hosted partition in its heartbeats (and /health). */
export interface PartitionReport {
  topic: string;
  partition: number;
  role: string;
  leader: string | null;
  term: number;
  commitIndex: number;
  appliedIndex: number;
  highWatermark: number;
  voters: string[];
  learners: string[];
  /** Leader: entries the slowest replica is behind; follower: committed but not yet applied. */
  lag: number;
}

/** Raft group id of a partition replica. */
export function partitionGroupId(topic: string, partition: number): string {
  return `t/${topic}/${partition}`;
}

export const TOPIC_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
export const CLIENT_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Limits every broker enforces (413 above them). */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
export const MAX_BATCH_BYTES = 4 * 1024 * 1024;
export const MAX_BATCH_MESSAGES = 10_000;
export const MAX_PARTITIONS = 256;
