// SNS alert sink: publishes each alert to a topic (email, chat, pager
// subscriptions hang off the topic). SNS is strict about what it accepts, so
// the alert is shaped to fit:
//   Subject    ASCII printable, one line, at most 100 characters (longer ones
//              are cut with "..."); email subscribers see it as the subject
//   Message    readable multi-line text: subject, message, severity, component,
//              step, cause, time, then details as indented JSON
//   Attributes severity, component, step as String attributes (for
//              subscription filter policies); empty ones are left out
// FIFO topics (*.fifo) also get a message group (the component) and a
// deduplication id derived from the alert.
import { createHash } from 'node:crypto';
import type { SNSClient, MessageAttributeValue } from '@aws-sdk/client-sns';
import type { Alert, AlertSink } from '../../core/ports.ts';
import { ConfigError, PermanentError, RetryableError, ThrottledError, errorMessage } from '../../core/errors.ts';

export interface SnsAlertSinkOptions {
  /** ARN of the alert topic. */
  topicArn: string;
  /** @default the region in the topic ARN, else the client's */
  region?: string;
  /** @default new SNSClient({ region }) */
  client?: SNSClient;
}

let snsModule: Promise<typeof import('@aws-sdk/client-sns')> | undefined;
/** The SNS SDK, loaded on first use: a config without an SNS sink never pays its memory. */
const snsSdk = () => (snsModule ??= import('@aws-sdk/client-sns'));

export const SNS_SUBJECT_MAX = 100;
/** SNS accepts 256 KiB per message including attributes; keep a margin for them. */
const MESSAGE_MAX_BYTES = 250 * 1024;

export class SnsAlertSink implements AlertSink {
  readonly topicArn: string;
  private client: SNSClient | undefined;
  private readonly region: string;

  constructor(opts: SnsAlertSinkOptions) {
    if (!/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]+$/.test(opts.topicArn)) {
      throw new ConfigError(`alerts topic: expected an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME), got ${JSON.stringify(opts.topicArn)}`);
    }
    this.topicArn = opts.topicArn;
    this.region = opts.region ?? opts.topicArn.split(':')[3];
    this.client = opts.client;
  }

  async send(alert: Alert): Promise<void> {
    const subject = snsSubject(alert.subject);
    const input = {
      TopicArn: this.topicArn,
      Subject: subject,
      Message: formatAlertMessage(alert),
      MessageAttributes: messageAttributes(alert),
      ...(this.topicArn.endsWith('.fifo')
        ? {
            MessageGroupId: alert.component || 'memvault',
            MessageDeduplicationId: createHash('sha256')
              .update(JSON.stringify([alert.time, alert.subject, alert.component ?? '', alert.step ?? '']))
              .digest('hex'),
          }
        : {}),
    };
    try {
      const sdk = await snsSdk();
      this.client ??= new sdk.SNSClient({ region: this.region });
      await this.client.send(new sdk.PublishCommand(input));
    } catch (err) {
      throw this.mapError(err);
    }
  }

  private mapError(err: unknown): Error {
    const raw = (err as { name?: string; Code?: string } | null)?.name ?? '';
    const name = raw.replace(/Exception$/, '');
    const detail = errorMessage(err);
    const topic = this.topicArn;
    switch (name) {
      case 'Throttled':
      case 'Throttling':
      case 'TooManyRequests':
      case 'KMSThrottling':
        return new ThrottledError(`SNS throttled publishing to ${topic} (${raw}); retry later`, { cause: err });
      case 'NotFound':
      case 'ResourceNotFound':
        return new PermanentError(`SNS topic ${topic} not found: check the alert topic ARN (region and account) and that the stack is deployed`, { cause: err });
      case 'AuthorizationError':
      case 'AccessDenied':
        return new PermanentError(`not authorized to publish to SNS topic ${topic} (${detail}): grant sns:Publish on the topic to this role`, { cause: err });
      case 'KMSAccessDenied':
        return new PermanentError(
          `SNS topic ${topic} is encrypted with a KMS key this role cannot use (KMSAccessDenied: ${detail}): allow kms:GenerateDataKey and kms:Decrypt on the topic's key`,
          { cause: err },
        );
      case 'KMSDisabled':
        return new PermanentError(`SNS topic ${topic} is encrypted with a disabled KMS key (KMSDisabled: ${detail}): enable the key`, { cause: err });
      case 'KMSInvalidState':
        return new PermanentError(`SNS topic ${topic}: its KMS key is not usable in its current state (KMSInvalidState: ${detail})`, { cause: err });
      case 'KMSNotFound':
        return new PermanentError(`SNS topic ${topic}: its KMS key was not found (KMSNotFound: ${detail}): fix the topic's encryption key`, { cause: err });
      case 'KMSOptInRequired':
        return new PermanentError(`SNS topic ${topic}: KMS is not enabled for this account (KMSOptInRequired: ${detail})`, { cause: err });
      case 'InvalidParameter':
      case 'InvalidParameterValue':
      case 'Validation':
        return new PermanentError(`SNS rejected the alert for ${topic} (${raw}: ${detail})`, { cause: err });
      case 'InternalError':
        return new RetryableError(`SNS failed publishing to ${topic} on the service side: ${detail}`, { cause: err });
    }
    const fault = (err as { $fault?: string } | null)?.$fault;
    const status = (err as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
    if (status === 429) return new ThrottledError(`SNS throttled publishing to ${topic}; retry later`, { cause: err });
    if (fault === 'server' || (status !== undefined && status >= 500)) {
      return new RetryableError(`SNS failed publishing to ${topic} on the service side: ${detail}`, { cause: err });
    }
    return new PermanentError(`publishing to SNS topic ${topic} failed: ${raw ? `${raw}: ` : ''}${detail}`, { cause: err });
  }
}

/**
 * An SNS-safe subject: ASCII printable only (accents dropped, other characters
 * become '?'), whitespace and newlines collapsed to single spaces, at most 100
 * characters with "..." marking a cut, never empty.
 */
export function snsSubject(subject: string): string {
  const ascii = subject
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/\s+/g, ' ')
    .replace(/[^\x20-\x7e]/g, '?')
    .trim();
  if (!ascii) return 'memvault alert';
  if (ascii.length <= SNS_SUBJECT_MAX) return ascii;
  return `${ascii.slice(0, SNS_SUBJECT_MAX - 3).trimEnd()}...`;
}

/** The message body: readable text for email and chat subscribers. */
export function formatAlertMessage(alert: Alert): string {
  const lines: string[] = [alert.subject, ''];
  if (alert.message && alert.message !== alert.subject) lines.push(alert.message, '');
  const field = (label: string, value: string | undefined) => {
    if (value) lines.push(`${`${label}:`.padEnd(11)}${value}`);
  };
  field('Severity', alert.severity);
  field('Component', alert.component);
  field('Step', alert.step);
  field('Cause', alert.cause);
  field('Time', alert.time);
  if (alert.details && Object.keys(alert.details).length > 0) {
    lines.push('Details:');
    lines.push(...safeJson(alert.details).split('\n').map((l) => `  ${l}`));
  }
  let text = lines.join('\n');
  if (Buffer.byteLength(text) > MESSAGE_MAX_BYTES) {
    const note = '\n... (truncated: the alert exceeded the SNS message size limit)';
    text = Buffer.from(text).subarray(0, MESSAGE_MAX_BYTES - note.length).toString('utf8').replace(/\uFFFD$/, '') + note;
  }
  return text;
}

function messageAttributes(alert: Alert): Record<string, MessageAttributeValue> {
  const out: Record<string, MessageAttributeValue> = {};
  for (const [name, value] of [
    ['severity', alert.severity],
    ['component', alert.component],
    ['step', alert.step],
  ] as const) {
    if (value !== undefined && value.trim() !== '') out[name] = { DataType: 'String', StringValue: value };
  }
  return out;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) ?? String(value);
  } catch {
    return String(value);
  }
}
