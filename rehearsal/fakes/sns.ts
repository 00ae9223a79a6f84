// SNS fake: the stack's topics, each in its region, with Publish checked and
// recorded as SNS does it:
//   - sns:Publish on the topic, against the caller's policies and the topic
//     policy (a service principal such as events.amazonaws.com has only the
//     topic policy, with aws:SourceArn / aws:SourceAccount of its rule or alarm);
//   - a topic encrypted with a KMS key (KmsMasterKeyId) also needs the
//     publisher to be allowed kms:GenerateDataKey and kms:Decrypt on that key
//     (the key policy, via sns.REGION.amazonaws.com): KMSAccessDenied if not,
//     KMSNotFound / KMSDisabled for a missing or disabled key;
//   - an unknown topic is NotFound; an empty or too long message (256 KiB,
//     attributes included), a bad subject (over 100 characters, not printable
//     ASCII, line breaks) or a FIFO publish without a group id is InvalidParameter.
import { randomUUID } from 'node:crypto';
import { AwsError, XmlList, queryStructList, type CallContext, type QueryParams, type XmlValue } from './common.ts';
import type { KmsFake } from './kms.ts';

export const SNS_NS = 'http://sns.amazonaws.com/doc/2010-03-31/';
const MAX_BYTES = 256 * 1024;
const TOPIC_ARN = /^arn:(aws[a-z-]*):sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_.-]+)$/;

export interface SnsTopicSpec {
  topicArn: string;
  kmsMasterKeyId?: string;
}

export interface PublishedMessage {
  topicArn: string;
  subject?: string;
  message: string;
  principal: string;
  messageId: string;
  attributes: Record<string, { DataType: string; StringValue?: string }>;
  messageGroupId?: string;
}

export interface PublishInput {
  TopicArn?: string;
  TargetArn?: string;
  Message?: string;
  Subject?: string;
  MessageGroupId?: string;
  MessageDeduplicationId?: string;
  MessageAttributes?: Record<string, { DataType: string; StringValue?: string; BinaryValue?: string }>;
}

export class SnsFake {
  private readonly topics = new Map<string, SnsTopicSpec>();
  readonly published: PublishedMessage[] = [];

  constructor(
    readonly account: string,
    topics: SnsTopicSpec[],
    private readonly kms: KmsFake,
  ) {
    for (const [i, t] of topics.entries()) {
      const m = TOPIC_ARN.exec(t.topicArn);
      if (!m) throw new Error(`topics[${i}].topicArn: expected arn:aws:sns:REGION:ACCOUNT:NAME, got ${JSON.stringify(t.topicArn)}`);
      if (m[3] !== account) throw new Error(`topics[${i}]: ${t.topicArn} is not in account ${account}`);
      this.topics.set(t.topicArn, { ...t });
    }
  }

  handle(op: string, p: QueryParams, ctx: CallContext): Record<string, XmlValue> {
    switch (op) {
      case 'Publish': {
        const attrs: PublishInput['MessageAttributes'] = {};
        for (const e of queryStructList(p, 'MessageAttributes', 'entry')) {
          attrs[e.get('Name') ?? ''] = {
            DataType: e.get('Value.DataType') ?? '',
            StringValue: e.get('Value.StringValue'),
            BinaryValue: e.get('Value.BinaryValue'),
          };
        }
        const id = this.publish(
          {
            TopicArn: p.get('TopicArn'),
            TargetArn: p.get('TargetArn'),
            Message: p.get('Message'),
            Subject: p.get('Subject'),
            MessageGroupId: p.get('MessageGroupId'),
            MessageDeduplicationId: p.get('MessageDeduplicationId'),
            MessageAttributes: attrs,
          },
          ctx,
        );
        return { MessageId: id };
      }
      case 'GetTopicAttributes': {
        const arn = p.get('TopicArn') ?? '';
        const t = this.topic(arn, ctx);
        ctx.authorize('sns:GetTopicAttributes', arn);
        const entries = [
          { key: 'TopicArn', value: arn },
          { key: 'Owner', value: this.account },
          ...(t.kmsMasterKeyId ? [{ key: 'KmsMasterKeyId', value: t.kmsMasterKeyId }] : []),
        ];
        // <Attributes><entry><key/><value/></entry>...</Attributes>
        return { Attributes: new XmlList('entry', entries) };
      }
    }
    throw new AwsError('InvalidAction', `The action ${op} is not valid for this endpoint.`, 400);
  }

  private topic(arn: string, ctx: CallContext): SnsTopicSpec {
    const m = TOPIC_ARN.exec(arn);
    if (!m) throw new AwsError('InvalidParameter', 'Invalid parameter: TopicArn', 400);
    const t = this.topics.get(arn);
    if (!t || m[2] !== ctx.region) throw new AwsError('NotFound', 'Topic does not exist', 404);
    return t;
  }

  /** Publish for a caller (a role through the gateway, or a service principal): checks, records, returns the message id. */
  publish(input: PublishInput, ctx: CallContext): string {
    const arn = input.TopicArn ?? input.TargetArn;
    if (!arn) throw new AwsError('InvalidParameter', 'Invalid parameter: TopicArn or TargetArn Reason: no value for required parameter', 400);
    if (!TOPIC_ARN.test(arn)) throw new AwsError('InvalidParameter', 'Invalid parameter: TopicArn', 400);
    ctx.authorize('sns:Publish', arn);
    const t = this.topic(arn, ctx);
    if (t.kmsMasterKeyId) {
      const k = this.kms.find(t.kmsMasterKeyId, ctx.region);
      if (!k) throw new AwsError('KMSNotFound', `Invalid keyId ${t.kmsMasterKeyId}`, 400);
      const via = `sns.${ctx.region}.amazonaws.com`;
      try {
        this.kms.authorize(ctx, 'GenerateDataKey', k, { keyId: t.kmsMasterKeyId, viaService: ctx.principal.endsWith('.amazonaws.com') ? undefined : via });
        this.kms.authorize(ctx, 'Decrypt', k, { keyId: t.kmsMasterKeyId, viaService: ctx.principal.endsWith('.amazonaws.com') ? undefined : via });
      } catch (err) {
        if (err instanceof AwsError && err.accessDenied) {
          throw new AwsError('KMSAccessDenied', `${ctx.principal} is not authorized to use the KMS key of ${arn}: ${err.message}`, 400, { accessDenied: true });
        }
        throw err;
      }
      if (k.state === 'Disabled') throw new AwsError('KMSDisabled', `${k.arn} is disabled.`, 400);
      if (k.state === 'PendingDeletion') throw new AwsError('KMSInvalidState', `${k.arn} is pending deletion.`, 400);
    }
    const message = input.Message;
    if (message === undefined || message === '') throw new AwsError('InvalidParameter', 'Invalid parameter: Empty message', 400);
    if (input.Subject !== undefined) {
      const s = input.Subject;
      if (s === '' || s.length > 100 || !/^[\x20-\x7e]*$/.test(s)) throw new AwsError('InvalidParameter', 'Invalid parameter: Subject', 400);
    }
    const attributes: PublishedMessage['attributes'] = {};
    let size = Buffer.byteLength(message);
    for (const [name, a] of Object.entries(input.MessageAttributes ?? {})) {
      if (!name || !/^(String|Number|Binary)(\..+)?$/.test(a.DataType)) {
        throw new AwsError('InvalidParameterValue', `The message attribute '${name}' has an invalid message attribute type, the set of supported type prefixes is Binary, Number, and String.`, 400);
      }
      if (a.DataType.startsWith('String') && !a.StringValue) {
        throw new AwsError('InvalidParameterValue', `The message attribute '${name}' must contain non-empty message attribute value for message attribute type 'String'.`, 400);
      }
      size += Buffer.byteLength(name) + Buffer.byteLength(a.DataType) + Buffer.byteLength(a.StringValue ?? a.BinaryValue ?? '');
      attributes[name] = { DataType: a.DataType, StringValue: a.StringValue };
    }
    if (size > MAX_BYTES) throw new AwsError('InvalidParameter', 'Invalid parameter: Message too long', 400);
    if (arn.endsWith('.fifo') && !input.MessageGroupId) {
      throw new AwsError('InvalidParameter', 'Invalid parameter: The MessageGroupId parameter is required for FIFO topics', 400);
    }
    const messageId = randomUUID();
    this.published.push({
      topicArn: arn,
      subject: input.Subject,
      message,
      principal: ctx.principal,
      messageId,
      attributes,
      messageGroupId: input.MessageGroupId,
    });
    return messageId;
  }
}
