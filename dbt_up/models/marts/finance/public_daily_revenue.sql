with

orders as (

    select * from {{ ref('public_orders') }}

),

daily as (

    select
        order_date as revenue_date,
        count(*) as order_count,
        sum(case when is_refunded then 1 else 0 end) as refunded_order_count,
        sum(amount) as net_revenue

    from orders

    group by order_date

),

final as (

    select
        cast(revenue_date as date) as revenue_date,
        cast(order_count as integer) as order_count,
        cast(refunded_order_count as integer) as refunded_order_count,
        cast(net_revenue as decimal(18, 2)) as net_revenue

    from daily

)

select * from final
