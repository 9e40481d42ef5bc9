with

customers as (

    select * from {{ ref('stg_core_customers') }}

),

lifetime as (

    select * from {{ ref('customer_value') }}

),

segments as (

    select * from {{ ref('segments') }}

),

scored as (

    select
        customers.customer_id,
        customers.email,
        customers.country,
        coalesce(lifetime.order_count, 0) as order_count,
        coalesce(lifetime.lifetime_amount, 0) as lifetime_value

    from customers

    left join lifetime
        on customers.customer_id = lifetime.customer_id

),

final as (

    select
        cast(scored.customer_id as integer) as customer_id,
        cast(scored.email as varchar) as email,
        cast(scored.country as varchar) as country,
        cast(
            (
                select max_by(segments.segment, segments.min_lifetime_value)
                from segments
                where segments.min_lifetime_value <= scored.lifetime_value
            ) as varchar
        ) as segment,
        cast(scored.lifetime_value as decimal(18, 2)) as lifetime_value,
        cast(scored.order_count as integer) as order_count

    from scored

)

select * from final
